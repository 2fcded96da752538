"""The engine's building blocks: timing, one pipeline step, the frame loop, tau, the VJP."""
