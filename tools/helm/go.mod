module github.com/event-aggregator/event-aggregator/tools/helm

go 1.26
