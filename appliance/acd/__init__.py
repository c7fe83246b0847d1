"""Automatic call distribution: agents, the queue and the routing of offers."""
