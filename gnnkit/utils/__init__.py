"""Small shared helpers: input checks, atomic file writes, safe loading, random state, timing,
memory, plots, environment facts."""
