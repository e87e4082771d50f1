"""The prediction API: settings, HTTP layer, prediction service, model, metrics and server."""
