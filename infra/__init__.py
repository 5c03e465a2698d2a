"""Local infrastructure: scripts that install and run Kafka and the store, and topic bootstrap."""
