# LAN page (appliance/lanpage): headless Chromium drives the browser tests.
DEBS += chromium

.PHONY: screenshots bench-lanpage

screenshots: deps ## screenshots of every LAN page view (phone and desktop, dark and light) into out/lanpage/
	$(GO) test -count=1 -run 'TestBrowser$$' ./appliance/lanpage/
	@ls out/lanpage/*.png

bench-lanpage: deps ## LAN page: server render time per view, page weight and first paint in Chromium
	$(GO) test -count=1 -run '^$$' -bench . -benchmem ./appliance/lanpage/...
	$(GO) test -count=1 -run 'TestBrowser$$/page_weight' ./appliance/lanpage/ -v | grep -E 'bytes|ok|FAIL'
