package testkit

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Command says how to run the edgecache binary, or another server.
type Command struct {
	// Program is the executable; default the edgecache binary (Binary).
	Program string
	// Args follow the program's name, e.g. run --config Caddyfile
	// --adapter caddyfile.
	Args []string
	// Dir is the working folder; Env the whole environment (nil: this
	// process's).
	Dir string
	Env []string
	// Output receives stdout and stderr.
	Output io.Writer
	// Listen are the host:port addresses Start waits for, within Within
	// (default 30 s).
	Listen []string
	Within time.Duration
}

// Process is a running edgecache (or Command.Program).
type Process struct {
	Cmd    *exec.Cmd
	exited chan struct{}
	err    error // Wait's, once exited is closed
}

// Start runs the program and waits until every address of c.Listen
// accepts connections. It fails if the process exits first, and kills it
// if it does not listen in time.
func Start(c Command) (*Process, error) {
	program := c.Program
	if program == "" {
		var err error
		if program, _, err = Binary(); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(program, c.Args...)
	cmd.Dir, cmd.Env = c.Dir, c.Env
	cmd.Stdout, cmd.Stderr = c.Output, c.Output
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{Cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	within := c.Within
	if within == 0 {
		within = 30 * time.Second
	}
	pending := c.Listen
	exited := false
	_, err := Wait(within, func() string {
		for len(pending) > 0 {
			conn, err := net.DialTimeout("tcp", pending[0], time.Second)
			if err != nil {
				break
			}
			conn.Close()
			pending = pending[1:]
		}
		if len(pending) == 0 {
			return ""
		}
		select {
		case <-p.exited:
			exited = true
			return ""
		default:
		}
		return cmd.Path + " does not listen on " + strings.Join(pending, ", ")
	})
	switch {
	case exited:
		return nil, fmt.Errorf("%s exited before listening on %s: %v", cmd.Path, strings.Join(pending, ", "), p.err)
	case err != nil:
		p.Kill()
		return nil, err
	}
	return p, nil
}

// Exited is closed when the process has exited; Err is then its exit error.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is the process's exit error, once Exited is closed.
func (p *Process) Err() error { return p.err }

// Stop sends sig (SIGTERM or SIGINT, as an operator would) and waits for
// the process to exit; it kills it after within. The error says if it
// did not exit cleanly on sig, or had exited before.
func (p *Process) Stop(sig os.Signal, within time.Duration) error {
	select {
	case <-p.exited:
		return fmt.Errorf("edgecache exited early: %v", p.err)
	default:
	}
	p.Cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		if p.err != nil {
			return fmt.Errorf("edgecache on %v: %v", sig, p.err)
		}
		return nil
	case <-time.After(within):
		p.Kill()
		return fmt.Errorf("edgecache did not stop within %s of %v; killed", within, sig)
	}
}

// Kill ends the process at once (SIGKILL), as a crash or an OOM kill
// does, and waits for it.
func (p *Process) Kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return
	}
	<-p.exited
}
