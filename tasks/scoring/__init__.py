"""Rule-based answer extraction and scoring (no API key)."""
