"""The metric contract (`contract.CONTRACT`) and the one reader every exporter builds from
(`reading.Reading`): Prometheus single-process, Prometheus multiprocess and OpenTelemetry metrics."""
