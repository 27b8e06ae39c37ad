"""The `evidence` CLI's commands, one module per area; ``service.cli`` loads each one only when it is used."""
