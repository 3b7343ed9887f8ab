package replay

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind. The package had no
// tests before replay's; this is its only TestMain.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
