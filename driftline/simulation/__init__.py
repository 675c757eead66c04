"""A simulated model in production: scenarios, the event stream they give, and sending it."""
