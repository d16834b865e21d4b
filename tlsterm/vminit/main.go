//go:build linux

// Command vminit is /init, PID 1, in the initramfs that .ci/ktls-vm.sh boots
// under qemu, so that tlsterm's kernel-TLS tests run against a real Debian
// kernel. It mounts /proc, /sys and /dev, loads the modules that
// /modules.list names (one path a line, dependencies first), brings lo up,
// checks that the kernel now offers the "tls" TCP ULP, runs every /*.test
// binary in turn (tlsterm's and l4's), prints one result line and powers
// the machine off.
//
// The kernel hands init every unknown "key=value" of its command line as an
// environment variable, and vminit reads two:
//
//	KTLS_RUN      the test binary's arguments, split on white space
//	              (default: the kernel-TLS tests and l4's TLS tests;
//	              quote it on the kernel command line: KTLS_RUN="-test.v ...")
//	KTLS_TIMEOUT  seconds until the watchdog powers off (default 300)
//
// The host reads these lines on the serial console:
//
//	VMINIT kernel=RELEASE uptime=SECONDS
//	VMINIT modules=N load=DURATION ulp=LIST
//	VMRESULT pass tests=DURATION
//	VMRESULT fail exit=N tests=DURATION
//	VMRESULT fail reason=WORD detail...
//
// Exactly one VMRESULT line is printed, then the machine powers off: after
// the tests, after any setup error, or when the watchdog fires. vminit never
// returns.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	testBinaries = "/*.test"
	moduleList   = "/modules.list"
	// The kernel-TLS tests of both packages, and l4's tests of
	// terminated connections, which there run over kernel TLS.
	defaultRun = "-test.v -test.run=KTLS|KernelTLS|HandOver|Probe|NoShortCleanEnd|Lifecycle|EchoThroughTLS|SNICertificateAndRoute|" +
		"ALPNRoute|MutualTLS|HalfCloseThroughTLS|BackendHalfCloseReachesClient|IdleTimeout|AbortsReachTheOtherSide|" +
		"CleanEndsStayClean|TLSTruncationReported|ByteAtATime|MoveConns|ProxyOut|ProxyIn"
	defaultTimeout = 300 * time.Second
	// testMargin is how long before the watchdog the test binary's own
	// -test.timeout fires, so that a hung test prints its goroutines.
	testMargin = 20 * time.Second
)

func main() {
	// Until /dev is mounted, init has no console when the initramfs
	// carries no /dev/console: setup errors are printed once it has one.
	setupErr := mountAll()
	openConsole()

	bound := timeoutFromEnv()
	var once sync.Once
	finish := func(line string) {
		once.Do(func() {
			// On its own line even if a test left a partial one.
			fmt.Printf("\n%s\n", line)
			powerOff()
		})
	}
	time.AfterFunc(bound, func() {
		finish(fmt.Sprintf("VMRESULT fail reason=watchdog after %s", bound))
	})

	if setupErr != nil {
		finish("VMRESULT fail reason=mount " + setupErr.Error())
	}
	finish(run(bound))
	select {} // powerOff returned: wait for the watchdog or for qemu's timeout
}

// run does everything after the mounts and returns the VMRESULT line.
func run(bound time.Duration) string {
	// The newline ends whatever partial line the BIOS left on the console.
	fmt.Printf("\nVMINIT kernel=%s uptime=%s\n", kernelRelease(), uptime())

	start := time.Now()
	n, err := loadModules(moduleList)
	if err != nil {
		return "VMRESULT fail reason=modules " + err.Error()
	}
	if err := linkUp("lo"); err != nil {
		return "VMRESULT fail reason=lo " + err.Error()
	}
	ulps := availableULPs()
	fmt.Printf("VMINIT modules=%d load=%s ulp=%s\n", n, time.Since(start).Round(time.Millisecond), strings.Join(ulps, ","))
	if !contains(ulps, "tls") {
		// Without the ULP every kernel-TLS test would skip and pass.
		return "VMRESULT fail reason=no-tls-ulp the kernel offers " + strings.Join(ulps, ",")
	}

	bins, _ := filepath.Glob(testBinaries)
	if len(bins) == 0 {
		return "VMRESULT fail reason=no-tests nothing matches " + testBinaries
	}
	// Each binary gets what is left of the bound, less the margin.
	deadline := time.Now().Add(bound - testMargin)
	start = time.Now()
	var failed []string
	for _, bin := range bins {
		args := testArgs(os.Getenv("KTLS_RUN"), time.Until(deadline).Round(time.Second))
		fmt.Printf("VMINIT run %s %s\n", bin, strings.Join(args, " "))
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		// PATH lets tests find binaries the initramfs carries (openssl),
		// and the kernel passes init none.
		cmd.Env = append(os.Environ(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR=/tmp", "HOME=/")
		var exitErr *exec.ExitError
		switch err := cmd.Run(); {
		case err == nil:
		case errors.As(err, &exitErr):
			failed = append(failed, fmt.Sprintf("%s exit=%d", filepath.Base(bin), exitErr.ExitCode()))
		default:
			failed = append(failed, fmt.Sprintf("%s %v", filepath.Base(bin), err))
		}
	}
	took := time.Since(start).Round(time.Millisecond)
	if len(failed) > 0 {
		return fmt.Sprintf("VMRESULT fail tests=%s %s", took, strings.Join(failed, " "))
	}
	return fmt.Sprintf("VMRESULT pass tests=%s", took)
}

// testArgs splits run (or the default) on white space and adds
// -test.timeout=timeout unless run sets one.
func testArgs(run string, timeout time.Duration) []string {
	if strings.TrimSpace(run) == "" {
		run = defaultRun
	}
	args := strings.Fields(run)
	for _, a := range args {
		if strings.HasPrefix(a, "-test.timeout") || strings.HasPrefix(a, "--test.timeout") {
			return args
		}
	}
	return append(args, "-test.timeout="+timeout.String())
}

func timeoutFromEnv() time.Duration {
	s := os.Getenv("KTLS_TIMEOUT")
	if s == "" {
		return defaultTimeout
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= int(testMargin/time.Second) {
		fmt.Printf("VMINIT KTLS_TIMEOUT=%q is not a number of seconds above %d; using %s\n", s, int(testMargin/time.Second), defaultTimeout)
		return defaultTimeout
	}
	return time.Duration(n) * time.Second
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
