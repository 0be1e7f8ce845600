"""`/v1/organization/usage/completions`: tokens the gateway served."""
