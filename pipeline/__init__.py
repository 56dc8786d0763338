"""DVC stage code: one module per stage, plus the helpers they share."""
