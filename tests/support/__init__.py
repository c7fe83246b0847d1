"""Helpers shared by tests: real-peer launchers (Chromium), fixture generators."""
