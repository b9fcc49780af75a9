module github.com/event-aggregator/event-aggregator/pkg

go 1.26

require github.com/alecthomas/kong v1.17.0 // indirect
