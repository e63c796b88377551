"""The Lookout web console: review alerts with their evidence, search by photo, manage galleries, watch the fleet."""
