"""The agent console: an aiohttp server with a static page, a WebSocket API and WebRTC signalling."""
