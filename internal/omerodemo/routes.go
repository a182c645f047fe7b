package omerodemo

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"path"
	"strconv"
)

// routes maps the production URL shapes to their handlers. Rendering
// endpoints take an optional z/t (images) or size (thumbnails) like OMERO's.
func (s *Server) routes() *http.ServeMux {
	m := http.NewServeMux()
	for _, app := range []string{"webgateway", "webclient"} {
		for _, p := range []string{"{id}/{$}", "{id}/{z}/{$}", "{id}/{z}/{t}/{$}"} {
			m.HandleFunc("GET /"+app+"/render_image/"+p, s.renderImage)
		}
		for _, p := range []string{"{id}/{$}", "{id}/{size}/{$}"} {
			m.HandleFunc("GET /"+app+"/render_thumbnail/"+p, s.thumbnail)
		}
		// A region (?region=x,y,w,h or ?tile=) and the split channels
		// are other renderings of the plane.
		for _, kind := range []string{"render_image_region", "render_split_channel"} {
			m.HandleFunc("GET /"+app+"/"+kind+"/{id}/{z}/{t}/{$}", s.renderImage)
		}
		m.HandleFunc("GET /"+app+"/render_birds_eye_view/{id}/{$}", s.thumbnail)
		m.HandleFunc("GET /"+app+"/imgData/{id}/{$}", s.apiImage)
	}
	m.HandleFunc("GET /webgateway/get_thumbnail/{id}/{$}", s.thumbnail)
	m.HandleFunc("GET /webclient/metadata_acquisition/{type}/{id}/{$}", s.metadata)
	m.HandleFunc("GET /iviewer/image_data/{id}/{$}", s.apiImage)
	m.HandleFunc("GET /webclient/get_thumbnail/{id}/{$}", s.thumbnail)
	m.HandleFunc("GET /webclient/get_thumbnail/{id}/{size}/{$}", s.thumbnail)
	m.HandleFunc("GET /webgateway/get_thumbnails/{$}", s.thumbnails)
	m.HandleFunc("GET /webgateway/get_thumbnails/{size}/{$}", s.thumbnails)
	m.HandleFunc("GET /webclient/get_thumbnails/{$}", s.thumbnails)
	m.HandleFunc("GET /webclient/get_thumbnails/{size}/{$}", s.thumbnails)
	m.HandleFunc("GET /webclient/metadata_details/{id}/{$}", s.metadata)
	m.HandleFunc("GET /webclient/metadata_details/{type}/{id}/{$}", s.metadata)
	m.HandleFunc("GET /webclient/img_detail/{id}/{$}", s.imageViewer)
	m.HandleFunc("GET /api/{$}", s.apiVersions)
	m.HandleFunc("GET /api/v0/{$}", s.apiRoot)
	m.HandleFunc("GET /api/v0/m/images/{id}/{$}", s.apiImage)
	m.HandleFunc("/api/v0/login/{$}", s.apiLogin)
	m.HandleFunc("GET /static/{file...}", s.static)
	m.HandleFunc("GET /webclient/{$}", s.webclient)
	m.HandleFunc("/webclient/login/{$}", s.loginPage)
	m.HandleFunc("/webclient/logout/{$}", s.logout)
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		s.sessionHeaders(w, r)
		http.Redirect(w, r, "/webclient/", http.StatusFound)
	})
	m.HandleFunc("/", s.notFound)
	return m
}

// imageID returns the request's {id} path value if it is a positive integer.
func imageID(r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	return id, err == nil && id > 0
}

// intValue returns the named path value as an integer, def if it is absent,
// and false if it is present but not a non-negative integer.
func intValue(r *http.Request, name string, def int) (int, bool) {
	v := r.PathValue(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	return n, err == nil && n >= 0
}

func (s *Server) renderImage(w http.ResponseWriter, r *http.Request) {
	id, ok1 := imageID(r)
	z, ok2 := intValue(r, "z", 0)
	t, ok3 := intValue(r, "t", 0)
	if !ok1 || !ok2 || !ok3 {
		s.notFound(w, r)
		return
	}
	s.writePNG(w, r, 256, fmt.Sprintf("image %d z=%d t=%d", id, z, t))
}

func (s *Server) thumbnail(w http.ResponseWriter, r *http.Request) {
	id, ok1 := imageID(r)
	size, ok2 := intValue(r, "size", 96)
	if !ok1 || !ok2 || size < 1 || size > 512 {
		s.notFound(w, r)
		return
	}
	s.writePNG(w, r, size, fmt.Sprintf("thumbnail %d", id))
}

// writePNG renders (after the render delay) a size×size PNG whose pixels
// depend on what and the version, and whose text chunk names the node.
func (s *Server) writePNG(w http.ResponseWriter, r *http.Request, size int, what string) {
	if !sleep(r, s.delay) {
		return
	}
	v := s.Version()
	body, err := renderPNG(size, what+" version "+v, fmt.Sprintf("%s from node %s, version %s", what, s.node, v))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.sessionHeaders(w, r)
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

func (s *Server) metadata(w http.ResponseWriter, r *http.Request) {
	id, ok := imageID(r)
	if !ok {
		s.notFound(w, r)
		return
	}
	s.writeHTML(w, r, http.StatusOK, fmt.Sprintf("Metadata of image %d", id),
		fmt.Sprintf("<table><tr><th>Image ID</th><td>%d</td></tr><tr><th>Name</th><td>image-%d.tif</td></tr></table>", id, id))
}

func (s *Server) imageViewer(w http.ResponseWriter, r *http.Request) {
	id, ok := imageID(r)
	if !ok {
		s.notFound(w, r)
		return
	}
	s.writeHTML(w, r, http.StatusOK, fmt.Sprintf("Image viewer: image %d", id),
		fmt.Sprintf(`<img src="/webgateway/render_image/%d/0/0/" alt="image %d">`, id, id))
}

func (s *Server) webclient(w http.ResponseWriter, r *http.Request) {
	s.writeHTML(w, r, http.StatusOK, "OMERO.web", `<p><a href="/webclient/img_detail/1/">image 1</a></p>`)
}

// loginPage shows the login form; a POST with a user name and a password
// logs in: it starts a new session, sets its cookie and redirects to the
// web client, whose pages then name the user.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	neverCacheHeaders(w)
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.writeHTML(w, r, http.StatusOK, "OMERO.web login", loginForm)
	case http.MethodPost:
		user, password := r.PostFormValue("username"), r.PostFormValue("password")
		if user == "" || password == "" {
			s.writeHTML(w, r, http.StatusForbidden, "OMERO.web login", `<p class="error">User name and password are required.</p>`+loginForm)
			return
		}
		s.setSession(w, s.login(user))
		w.Header().Set("Vary", "Cookie")
		http.Redirect(w, r, "/webclient/", http.StatusFound)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

const loginForm = `<form method="post" action="/webclient/login/">
<label>Username <input name="username"></label>
<label>Password <input name="password" type="password"></label>
<button type="submit">Login</button>
</form>`

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.writeHTML(w, r, http.StatusNotFound, "Page not found", "<p>"+html.EscapeString(r.URL.Path)+"</p>")
}

// writeHTML writes an OMERO-like HTML page that names the node, the version
// and the session's user.
func (s *Server) writeHTML(w http.ResponseWriter, r *http.Request, status int, title, content string) {
	user := s.user(r)
	who := "public user"
	if user != "" {
		who = "Logged in as " + html.EscapeString(user)
	}
	s.sessionHeaders(w, r)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<!DOCTYPE html>
<html><head><title>%s</title><link rel="stylesheet" href="/static/webgateway/css/ome.body.css"></head>
<body>
<h1>%s</h1>
%s
<p class="user">%s</p>
<p class="served-by">node %s, version %s</p>
</body></html>
`, html.EscapeString(title), html.EscapeString(title), content, who, html.EscapeString(s.node), html.EscapeString(s.Version()))
}

func (s *Server) apiVersions(w http.ResponseWriter, r *http.Request) {
	base := "http://" + r.Host + "/api/v0/"
	s.writeJSON(w, r, map[string]any{
		"data": []map[string]any{{"version": "0", "url:base": base}},
	})
}

func (s *Server) apiRoot(w http.ResponseWriter, r *http.Request) {
	base := "http://" + r.Host + "/api/v0/"
	s.writeJSON(w, r, map[string]any{
		"url:images":   base + "m/images/",
		"url:datasets": base + "m/datasets/",
		"url:projects": base + "m/projects/",
		"url:token":    base + "token/",
		"url:login":    base + "login/",
	})
}

func (s *Server) apiImage(w http.ResponseWriter, r *http.Request) {
	id, ok := imageID(r)
	if !ok {
		s.notFound(w, r)
		return
	}
	s.writeJSON(w, r, map[string]any{
		"data": map[string]any{
			"@id":   id,
			"@type": "http://www.openmicroscopy.org/Schemas/OME/2016-06#Image",
			"Name":  fmt.Sprintf("image-%d.tif", id),
		},
		"meta": map[string]any{"node": s.node, "version": s.Version()},
	})
}

// writeJSON writes v with OMERO's headers; meta.node and meta.version (or,
// where the shape has no meta, top-level keys) say who answered.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, v map[string]any) {
	s.writeJSONStatus(w, r, http.StatusOK, v)
}

// writeJSONStatus is writeJSON with a status.
func (s *Server) writeJSONStatus(w http.ResponseWriter, r *http.Request, status int, v map[string]any) {
	if _, ok := v["meta"]; !ok {
		v["meta"] = map[string]any{"node": s.node, "version": s.Version()}
	}
	s.sessionHeaders(w, r)
	s.writeJSONBody(w, status, v)
}

// writeJSONBody writes v as it is, with the headers already set.
func (s *Server) writeJSONBody(w http.ResponseWriter, status int, v map[string]any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// static serves OMERO's static files: a style sheet, a script or an icon
// by extension, without session cookie (static files need no session).
func (s *Server) static(w http.ResponseWriter, r *http.Request) {
	file := r.PathValue("file")
	var body []byte
	switch path.Ext(file) {
	case ".css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		body = fmt.Appendf(nil, "/* %s from node %s, version %s */\nbody { font-family: sans-serif; margin: 1em; }\n", file, s.node, s.Version())
	case ".js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		body = fmt.Appendf(nil, "// %s from node %s, version %s\nconsole.log(%q);\n", file, s.node, s.Version(), file)
	case ".png":
		var err error
		body, err = renderPNG(16, "icon "+file+" version "+s.Version(), fmt.Sprintf("%s from node %s, version %s", file, s.node, s.Version()))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "image/png")
	default:
		http.Error(w, "404 not found", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Last-Modified", staticModTime)
	w.Write(body)
}

const staticModTime = "Mon, 02 Jun 2025 10:00:00 GMT"

// thumbnails is the batch thumbnail endpoint (get_thumbnails/?id=1&id=2):
// a JSON object of data URIs by image id, as OMERO.web's
// get_thumbnails_json answers.
func (s *Server) thumbnails(w http.ResponseWriter, r *http.Request) {
	size, ok := intValue(r, "size", 96)
	if !ok || size < 1 || size > 512 {
		s.notFound(w, r)
		return
	}
	if !sleep(r, s.delay) {
		return
	}
	out := make(map[string]any)
	for _, v := range r.URL.Query()["id"] {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			continue
		}
		body, err := renderPNG(size, fmt.Sprintf("thumbnail %d version %s", id, s.Version()), fmt.Sprintf("thumbnail %d from node %s", id, s.node))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		out[strconv.FormatInt(id, 10)] = "data:image/png;base64," + base64.StdEncoding.EncodeToString(body)
	}
	s.writeJSON(w, r, out)
}

// apiLogin is the JSON API's login (api/v0/login/): a POST with a user name
// and a password starts a session and answers with its event context and
// cookie; a GET is refused, as OMERO's LoginView does.
func (s *Server) apiLogin(w http.ResponseWriter, r *http.Request) {
	neverCacheHeaders(w)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		s.writeJSONStatus(w, r, http.StatusMethodNotAllowed, map[string]any{
			"message": "POST only with username, password, server and csrftoken",
		})
		return
	}
	user, password := r.PostFormValue("username"), r.PostFormValue("password")
	if user == "" || password == "" {
		s.writeJSONStatus(w, r, http.StatusForbidden, map[string]any{"message": "Login failed. Reason unknown."})
		return
	}
	id := s.login(user)
	s.setSession(w, id)
	w.Header().Set("Vary", "Cookie")
	s.writeJSONBody(w, http.StatusOK, map[string]any{
		"success":      true,
		"eventContext": map[string]any{"userName": user, "sessionUuid": id},
		"meta":         map[string]any{"node": s.node, "version": s.Version()},
	})
}

// logout ends the session and sends the browser to the login page.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	neverCacheHeaders(w)
	if c, err := r.Cookie(SessionCookie); err == nil {
		s.mu.Lock()
		delete(s.users, c.Value)
		s.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1})
	w.Header().Set("Vary", "Cookie")
	http.Redirect(w, r, "/webclient/login/", http.StatusFound)
}
