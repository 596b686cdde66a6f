-- GET one fixed path over and over, without a response() callback:
--   wrk -s get_path_uncounted.lua URL -- PATH
-- For very large answers (a 100 MiB file): with response() defined, wrk would buffer
-- every body for Lua. Statuses are not counted per code; wrk's own count of answers
-- with status >= 400 stands in for non-2xx (see common.lua's done()).

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local req

function init(args)
   local path = assert(args[1], "usage: get_path_uncounted.lua -- PATH")
   req = wrk.format("GET", path)
end

function request()
   return req
end

response = nil
