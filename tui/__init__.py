"""The site-admin terminal UI: a Textual app in its own process, talking to the box's local API."""
