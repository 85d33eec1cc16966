"""latentwire receiver."""
