"""latentwire trainer."""
