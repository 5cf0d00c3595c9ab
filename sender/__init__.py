"""The send engine (`envios send`) and the gateway adapters; the shared core is `envios`."""
