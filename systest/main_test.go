package systest

import (
	"os"
	"testing"

	"github.com/univrs/hypha/internal/systest"
)

// TestMain removes the hyphad and inferd binaries the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	systest.RemoveBinaries()
	os.Exit(code)
}
