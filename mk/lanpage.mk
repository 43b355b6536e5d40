# LAN page (appliance/lanpage): headless Chromium drives the browser tests.
DEBS += chromium

.PHONY: screenshots bench-lanpage

screenshots: deps lanpage-axe ## screenshots of every LAN page view (phone and desktop, dark and light) into out/lanpage/
	$(GO) test -count=1 -run 'TestBrowser$$' ./appliance/lanpage/
	@ls out/lanpage/*.png

bench-lanpage: deps lanpage-axe ## LAN page: server render time per view, page weight and first paint in Chromium
	$(GO) test -count=1 -run '^$$' -bench . -benchmem ./appliance/lanpage/...
	$(GO) test -count=1 -run 'TestBrowser$$/page_weight' ./appliance/lanpage/ -v | grep -E 'bytes|ok|FAIL'

# axe-core (accessibility rules) for the browser test, from npm, git-ignored under out/.
LANPAGE_AXE := out/lanpage-node/node_modules/axe-core/axe.min.js
$(LANPAGE_AXE):
	npm install --silent --no-audit --no-fund --prefix out/lanpage-node axe-core@4.14.1
lanpage-axe: $(LANPAGE_AXE)
.PHONY: lanpage-axe
TEST_PREREQS += lanpage-axe
