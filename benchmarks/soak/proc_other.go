//go:build !linux

package soak

import "errors"

// Without /proc the benchmark measures rates and lag but not RSS or CPU.

func selfCPU() (cpu float64, rss int64) { return 0, 0 }

func procStat(int) (cpu float64, rss int64, err error) {
	return 0, 0, errors.New("process statistics need Linux's /proc")
}
