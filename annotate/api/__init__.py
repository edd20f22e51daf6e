"""The REST API (DRF): one view class per operation, each validating, calling a service, answering."""
