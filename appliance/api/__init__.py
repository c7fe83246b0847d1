"""The box's local admin API: a Unix socket serving snapshots, an event stream and commands.

``schema`` is the wire model (the only module the TUI imports from ``appliance``);
``server`` serves it from a running ``Box``; ``client`` is what the TUI talks through.
"""
