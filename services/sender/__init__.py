"""latentwire sender."""
