package edgecache

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/caddymodule"
)

// exampleTags returns the tag rules of every edge_cache handler of
// Caddyfile.example, checking they are the same on every listener (the
// cache buster must tag what it stores as the others do).
func exampleTags(t *testing.T) *cache.TagRules {
	t.Helper()
	text, err := os.ReadFile("Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := adapt(string(text))
	if err != nil {
		t.Fatal(err)
	}
	var found []json.RawMessage
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == "edge_cache" {
				if tags, ok := v["tags"]; ok {
					raw, _ := json.Marshal(tags)
					found = append(found, raw)
				} else {
					t.Errorf("an edge_cache handler without tags: %v", v)
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var root any
	if err := json.Unmarshal([]byte(cfg), &root); err != nil {
		t.Fatal(err)
	}
	walk(root)
	if len(found) == 0 {
		t.Fatal("no edge_cache handler with tags")
	}
	for _, f := range found[1:] {
		if string(f) != string(found[0]) {
			t.Errorf("handlers with different tags:\n%s\n%s", found[0], f)
		}
	}
	var c caddymodule.TagsConfig
	if err := json.Unmarshal(found[0], &c); err != nil {
		t.Fatal(err)
	}
	rules, err := c.Compile()
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// The URL shapes of OMERO.web's url patterns (webgateway/urls.py,
// webclient/urls.py, api/urls.py, omero-iviewer's urls.py) that name an
// object, with the tags Caddyfile.example gives them.
var exampleTagCases = []struct {
	uri  string
	tags string
}{
	{"/webgateway/render_image/11/", "image:11"},
	{"/webgateway/render_image/11/0/0/?c=1|0:255$FF0000&m=c", "image:11"},
	{"/webgateway/render_image_region/11/0/0/?region=0,0,512,512", "image:11"},
	{"/webgateway/render_image_region/11/0/0/?tile=2,0,1,512,512", "image:11"},
	{"/webgateway/render_image_rdef/11/0/0/", "image:11"},
	{"/webgateway/render_image_region_rdef/11/0/0/?region=0,0,9,9", "image:11"},
	{"/webgateway/render_split_channel/11/0/0/", "image:11"},
	{"/webgateway/render_row_plot/11/0/0/5/", "image:11"},
	{"/webgateway/render_col_plot/11/0/0/5/2/", "image:11"},
	{"/webgateway/render_birds_eye_view/11/", "image:11"},
	{"/webgateway/render_movie/11/z/0/", "image:11"},
	{"/webgateway/render_thumbnail/11/", "image:11"},
	{"/webgateway/render_thumbnail/11/96/96/", "image:11"},
	{"/webgateway/get_thumbnail/11/", "image:11"},
	{"/webgateway/imgData/11/", "image:11"},
	{"/webgateway/imgData/11/rdefs/", "image:11"},
	{"/webgateway/img_detail/11/", "image:11"},
	{"/webgateway/get_thumbnails/?id=11&id=12", "image:11 image:12"},
	{"/webgateway/get_thumbnails/96/?id=11", "image:11"},
	{"/webclient/render_image/11/0/0/", "image:11"},
	{"/webclient/render_image_region/11/0/0/?region=0,0,9,9", "image:11"},
	{"/webclient/render_image_download/11/", "image:11"},
	{"/webclient/render_split_channel/11/0/0/", "image:11"},
	{"/webclient/render_birds_eye_view/11/", "image:11"},
	{"/webclient/5/render_image/11/0/0/", "image:11"}, // behind a share id
	{"/webclient/render_thumbnail/11/", "image:11"},
	{"/webclient/render_thumbnail/size/96/11/", "image:11"},
	{"/webclient/get_thumbnail/11/", "image:11"},
	{"/webclient/get_thumbnails/?id=11&id=12", "image:11 image:12"},
	{"/webclient/img_detail/11/", "image:11"},
	{"/webclient/imgData/11/", "image:11"},
	{"/webclient/metadata_details/image/11/", "image:11"},
	{"/webclient/metadata_acquisition/image/11/", "image:11"},
	{"/webclient/metadata_preview/image/11/", "image:11"},
	{"/webclient/metadata_hierarchy/image/11/", "image:11"},
	{"/webclient/metadata_details/dataset/3/", "dataset:3"},
	{"/webclient/metadata_details/well/4/", "well:4"},
	{"/webclient/api/images/?id=3", "dataset:3"},
	{"/webclient/api/datasets/?id=2", "project:2"},
	{"/webclient/api/plates/?id=7", "screen:7"},
	{"/webclient/api/plate_acquisitions/?id=8", "plate:8"},
	{"/api/v0/m/images/11/", "image:11"},
	{"/api/v0/m/images/11/rois/", "image:11"},
	{"/api/v0/m/datasets/3/images/", "dataset:3"},
	{"/api/v0/m/images/?dataset=3", "dataset:3"},
	{"/api/v0/m/projects/2/", "project:2"},
	{"/api/v0/m/screens/7/plates/", "screen:7"},
	{"/api/v0/m/plates/8/wells/", "plate:8"},
	{"/api/v0/m/wells/?plate=8", "plate:8"},
	{"/api/v0/m/wells/4/", "well:4"},
	{"/iviewer/image_data/11/", "image:11"},
	{"/iviewer/shapes_by_region/11/", "image:11"},
	{"/iviewer/?images=11,12&dataset=3", "dataset:3 image:11 image:12"},
	{"/iviewer/well_images/?well=4", "well:4"},
	// Not about one object.
	{"/webclient/api/containers/", ""},
	{"/api/v0/", ""},
	{"/static/webgateway/img/ome.png", ""},
	{"/webgateway/render_roi_thumbnail/11/", ""}, // a ROI's id, not an image's
}

func TestCaddyfileExampleTags(t *testing.T) {
	rules := exampleTags(t)
	for _, tc := range exampleTagCases {
		got := strings.Join(rules.KeyTags(tc.uri), " ")
		if got != tc.tags {
			t.Errorf("%s: tags %q, want %q", tc.uri, got, tc.tags)
		}
	}
	// The batch thumbnails' id is an image; the tree's is a container.
	if tags := rules.KeyTags("/webclient/api/images/?id=3"); slices.Contains(tags, "image:3") {
		t.Error("webclient/api/images/?id= tagged as an image")
	}
}
