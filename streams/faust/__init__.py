"""The worker on Faust: the app, its agent and timer, the changelog store of the state, the web pages."""
