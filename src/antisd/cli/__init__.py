"""The ``antisd`` command line: entry point, options (YAML + flags), help, validation, Ctrl-C, threads."""
