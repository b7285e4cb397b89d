"""Adapters of AntiSD to other RL frameworks, as pure functions of their data (``antisd.integrations.verl``)."""
