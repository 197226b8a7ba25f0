"""Small shared helpers: atomic file writes, safe loading, environment facts."""
