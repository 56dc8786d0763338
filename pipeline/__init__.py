"""DVC stage code: one module per stage, plus the library modules they share (no module imports a
stage module: docs/architecture.md)."""
