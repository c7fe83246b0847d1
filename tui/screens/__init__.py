"""The TUI's screens, one per admin task."""
