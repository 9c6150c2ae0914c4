// Command lmfs is the lmfs command line: mount a filesystem that compresses
// everything stored in it with a language model, and tools around it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/lmfs/lmfs/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	args := os.Args[1:]
	if b := filepath.Base(os.Args[0]); b == "mount.lmfs" || b == "mount.fuse.lmfs" {
		args = mountHelperArgs(args)
	}
	os.Exit(run(ctx, args, os.Stdin, os.Stdout, os.Stderr))
}

// exitError carries a specific exit status (e.g. fsck's "damage found").
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// run executes the command line and returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "lmfs: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// app is what every subcommand shares: the global flags and the streams.
type app struct {
	configFile string
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer
}

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "lmfs",
		Short:         "A FUSE filesystem that compresses everything stored in it with a language model",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&a.configFile, "config", "", "config file (default: $XDG_CONFIG_HOME/lmfs/config.yaml, then /etc/lmfs/config.yaml)")
	root.PersistentFlags().String("log-level", "", "log level: debug, info, warn, error")
	root.AddCommand(
		a.newConfigCmd(),
		a.newMountCmd(),
		a.newUmountCmd(),
		a.newStatsCmd(),
		a.newFsckCmd(),
		a.newCompressCmd(),
		a.newDecompressCmd(),
		a.newBenchCmd(),
		a.newRecompressCmd(),
	)
	return root
}

// load reads the configuration for cmd, binding the flags it defines, and
// sets up logging.
func (a *app) load(cmd *cobra.Command) (*config.Config, error) {
	c, _, err := config.Load(a.configFile, cmd.Flags())
	if err != nil {
		return nil, err
	}
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Log.Level))
	slog.SetDefault(slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: lvl})))
	return c, nil
}

func (a *app) newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print the effective configuration (file, LMFS_* environment and flags merged)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, used, err := config.Load(a.configFile, cmd.Flags())
			if err != nil {
				return err
			}
			y, err := c.YAML()
			if err != nil {
				return err
			}
			if used == "" {
				used = "none (defaults)"
			}
			fmt.Fprintf(a.stdout, "# config file: %s\n%s", used, y)
			return nil
		},
	}
	cmd.Flags().String("store", "", "store directory")
	return cmd
}
