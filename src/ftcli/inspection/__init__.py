"""Looking inside a model: attention weights for a text (`ftcli attention`)."""
