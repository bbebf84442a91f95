package proc

import (
	"os"
	"runtime"
	"testing"
)

// TestReadRealProc reads this machine's /proc where there is one: the parser
// must accept every process the kernel lists, and find this test's own.
func TestReadRealProc(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("no /proc")
	}
	s, err := Read(os.DirFS("/proc"))
	if err != nil {
		t.Fatal(err)
	}
	me, ok := s[os.Getpid()]
	if !ok || me.PPID != os.Getppid() {
		t.Errorf("own process: %+v (found %v), want ppid %d", me, ok, os.Getppid())
	}
	if _, err := ReadIO(os.DirFS("/proc"), os.Getpid()); err != nil {
		t.Logf("no task I/O accounting here: %v", err)
	}
}
