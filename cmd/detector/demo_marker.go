package main

import (
	"slices"
	"time"

	"github.com/wikimedia/pretrain-detector/internal/stages"
	"github.com/wikimedia/pretrain-detector/pipeline"
	"github.com/wikimedia/pretrain-detector/simulate"
)

// demoEarlierBuild is the version of the deploy marker the demo adds five
// minutes into the story, as a release engineer would post one for a
// Pretrain build (POST /api/v1/deploys). No code changes with it; its
// attribution window closes at the story's real Pretrain deploy, so the
// page shows a closed window's verdict beside the failed deploy's: with
// five minutes of data before it, insufficient-evidence.
const demoEarlierBuild = "demo-earlier-build"

// addDemoMarker adds that marker to the pipeline and to the story.
func addDemoMarker(p *pipeline.Pipeline, story *narrator, truth simulate.GroundTruth) {
	at := truth.Start.Add(5 * time.Minute)
	p.Store.AddDeploy(stages.MarkerDeploy("pretrain", "", demoEarlierBuild, at, "api"))
	story.events = append(story.events, storyEvent{at, "deploy marker posted for an earlier Pretrain build (" + demoEarlierBuild + ")"})
	slices.SortStableFunc(story.events, func(a, b storyEvent) int { return a.at.Compare(b.at) })
}
