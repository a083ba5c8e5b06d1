"""The handlers of bench's commands, one module per command group (imported when a command runs)."""
