"""merged-vlm."""
