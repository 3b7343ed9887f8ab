package detect

import (
	"time"

	"github.com/wikimedia/pretrain-detector/config"
)

// testConfig is the detector configuration of config.Default, mapped as
// package pipeline maps it: the tests run with the production defaults,
// kept in one place.
func testConfig() Config {
	c := config.Default()
	return Config{
		Cohort: c.Pretrain.Cohort, SharedWith: c.Detect.ShareDataWikis,
		Alpha: c.Detect.Alpha, Margin: c.Detect.Margin,
		MinPrePeriod: time.Duration(c.Detect.MinPrePeriod), Attribution: time.Duration(c.Detect.Attribution),
		ResolveAfter: time.Duration(c.Detect.ResolveAfter), AnomalyWindow: time.Duration(c.Detect.AnomalyWindow),
		MinBuckets: c.Detect.MinBuckets, MinDistinct: c.Detect.MinDistinct, LeakMinEvents: c.Detect.LeakMinEvents,
	}
}
