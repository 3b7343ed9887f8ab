package wikimap

// Run: go test ./wikimap -run '^$' -bench . -benchmem

import (
	"testing"
)

func BenchmarkByHost(b *testing.B) {
	m, err := Default()
	if err != nil {
		b.Fatal(err)
	}
	for _, host := range []string{
		"en.wikipedia.org",
		"EN.M.Wikipedia.ORG:443",
		"test.wikipedia.org.",
		"www.wikidata.org",
		"unknown.example.org",
	} {
		in := []byte(host)
		b.Run("host="+host, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if m.ByHost(in) == 0 && host != "unknown.example.org" {
					b.Fatalf("ByHost(%q) = 0", host)
				}
			}
		})
	}
}

func BenchmarkByName(b *testing.B) {
	m, err := Default()
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"enwiki", "testwikidatawiki", "nosuchwiki"} {
		in := []byte(name)
		b.Run("dbname="+name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if m.ByName(in) == 0 && name != "nosuchwiki" {
					b.Fatalf("ByName(%q) = 0", name)
				}
			}
		})
	}
}

// BenchmarkDefault is the once-per-process start-up cost (budget: well under 50 ms).
func BenchmarkDefault(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Default(); err != nil {
			b.Fatal(err)
		}
	}
}
