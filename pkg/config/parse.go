package config

import (
	"fmt"
	"io"

	"github.com/alecthomas/kong"
)

// Parse reads a binary's command line and environment into cli, a kong
// struct embedding one of this package's configurations. It returns the
// chosen subcommand, or done=true when the command line was only a request
// for help.
func Parse(cli any, args []string, name, description, httpAddr string, stdout, stderr io.Writer) (cmd string, done bool, err error) {
	exited := false
	parser, err := kong.New(cli,
		kong.Name(name),
		kong.Description(description),
		kong.Vars{"http_addr": httpAddr},
		kong.Writers(stdout, stderr),
		kong.Exit(func(int) { exited = true }),
	)
	if err != nil {
		return "", false, fmt.Errorf("flags: %w", err)
	}
	kctx, err := parser.Parse(args)
	if exited {
		return "", true, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("flags: %w", err)
	}
	return kctx.Command(), false, nil
}
