// Package process runs the servers of the development stack as child processes: influxd for
// the test and bench harnesses, the ingestor binary for the end-to-end tests. Their output goes
// to a log file a failing test can show, and they stop the way a supervisor stops them: SIGTERM,
// then SIGKILL once a grace period is over.
package process

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Process is one started child process.
type Process struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // how it exited; read only after done is closed
}

// Start starts cmd with its stdout and stderr appended to logPath (created if missing).
func Start(cmd *exec.Cmd, logPath string) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the log of %s: %w", cmd.Path, err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	p := &Process{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	return p, nil
}

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// ExitErr is how the process exited (nil for status 0); valid once Done is closed.
func (p *Process) ExitErr() error {
	<-p.done
	return p.err
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// LogPath is the file its output goes to.
func (p *Process) LogPath() string { return p.logPath }

// Kill sends SIGKILL (no clean shutdown: the crash the fault tests simulate) and waits for the
// exit.
func (p *Process) Kill() {
	if p.Running() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// Stop sends SIGTERM and waits up to grace for the exit, then kills the process. It reports
// whether the process exited within grace (0: kill at once).
func (p *Process) Stop(grace time.Duration) bool {
	if !p.Running() {
		return true
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		p.Kill()
		return false
	}
}
