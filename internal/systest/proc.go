package systest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]string{}
)

// Binary builds the program of package pkg (e.g. "packages/hyphad") once
// per test process, as the image builder does (CGO_ENABLED=0, the netgo
// and osusergo tags), and returns its path.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "hypha-systest-bin-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d // reused by the process's tests; RemoveBinaries deletes it
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(buildDir, filepath.Base(pkg))
	cmd := exec.Command(goTool(), "build", "-tags", "netgo,osusergo", "-o", out, "./"+pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	built[pkg] = out
	return out
}

// RemoveBinaries deletes what Binary built (call it from TestMain after
// the tests ran).
func RemoveBinaries() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
		buildDir, built = "", map[string]string{}
	}
}

// goTool is the go command that runs the tests (on PATH under make test).
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if r := os.Getenv("GOROOT"); r != "" && fileExists(filepath.Join(r, "bin", "go")) {
		return filepath.Join(r, "bin", "go")
	}
	return "go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// moduleRoot finds the directory holding go.mod above the working
// directory (go test runs in the package directory).
func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(d, "go.mod")) {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", fmt.Errorf("systest: no go.mod above the working directory")
		}
		d = p
	}
}

var (
	spawnOnce sync.Once
	spawnReq  chan func()
)

// spawn starts cmd from one OS thread that lives as long as the test
// process. Pdeathsig fires when the thread that forked a child exits, not
// the process; Net.In discards the threads it switches into namespaces,
// and any of them could be one that forked a child before.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReq = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked, never exits
			for f := range spawnReq {
				f()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnReq <- func() { errc <- cmd.Start() }
	return <-errc
}

// Proc is a program running inside a node's namespace. Its output goes
// to a log file that the test prints (the tail) if it fails.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// Run runs argv inside node i's namespace (ip netns exec) with extra
// environment variables. The process is killed when the test ends.
func (n *Net) Run(t testing.TB, i int, name string, argv []string, env ...string) *Proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.NS(i)}, argv...)...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := spawn(cmd); err != nil {
		f.Close()
		t.Fatalf("start %s in %s: %v", name, n.NS(i), err)
	}
	p := &Proc{Name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("--- last lines of %s (%s):\n%s", name, n.NS(i), p.Tail(40))
		}
	})
	return p
}

// Kill ends the process at once (SIGKILL: a power cut, as far as its peers
// can tell) and waits for it. Killing a dead process is a no-op.
func (p *Proc) Kill() {
	if p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// Stop asks the process to exit (SIGTERM) and waits up to 10 s before
// killing it.
func (p *Proc) Stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill()
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Log is the process's whole output so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// Tail is the last lines of the process's output.
func (p *Proc) Tail(lines int) string {
	b := bytes.TrimRight([]byte(p.Log()), "\n")
	parts := strings.Split(string(b), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
