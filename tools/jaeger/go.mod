module github.com/event-aggregator/event-aggregator/tools/jaeger

go 1.26
