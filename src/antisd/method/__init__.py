"""Pure maths of AntiSD: token signals, advantages, the gate, privileged contexts, the monitor, pass@k."""
