"""latentwire client."""
