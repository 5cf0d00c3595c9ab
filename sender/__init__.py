"""envios sender: schema, state machine, gateway adapters and the send loop."""
