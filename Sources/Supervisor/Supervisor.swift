// Supervisor: spawns and watches worker processes; health and metrics endpoints.
