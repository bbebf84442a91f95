package receiver

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// routeConsole mounts the browser console at /ui/ (it answers every path
// under it itself) and sends / there, when the admin token is set.
func (s *Server) routeConsole(e *echo.Echo) {
	if s.opt.Console == nil || s.opt.AdminToken == "" {
		return
	}
	h := echo.WrapHandler(s.opt.Console)
	e.Any("/ui", h)
	e.Any("/ui/*", h)
	e.GET("/", func(c echo.Context) error { return c.Redirect(http.StatusFound, "/ui/") })
}
