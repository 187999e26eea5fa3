-- A game server's map writes without players (traces/README.md): generate the terrain
-- around the origin as joining players would (minetest.emerge_area), then edit nodes all
-- over it in rounds as players digging and building would, each round saved by the
-- server's periodic map save (server_map_save_interval), then shut down (saves the rest).
local radius = tonumber(minetest.settings:get("trace_driver_radius") or "64")
local rounds = tonumber(minetest.settings:get("trace_driver_rounds") or "20")
local edits = tonumber(minetest.settings:get("trace_driver_edits") or "200")
local pos1 = {x = -radius, y = -32, z = -radius}
local pos2 = {x = radius - 1, y = 47, z = radius - 1}
local t0 = minetest.get_us_time()
local function log(msg)
  minetest.log("action", string.format("[trace_driver] %.1f s: %s", (minetest.get_us_time() - t0) / 1e6, msg))
end

local function edit_round(n)
  if n > rounds then
    log("edits done, shutting down")
    minetest.request_shutdown("trace_driver done", false, 0)
    return
  end
  local changed = 0
  for _ = 1, edits do
    local p = {x = math.random(pos1.x, pos2.x), y = math.random(-16, 31), z = math.random(pos1.z, pos2.z)}
    local name = minetest.get_node(p).name
    if name ~= "ignore" then
      minetest.set_node(p, {name = name == "air" and "default:cobble" or "air"})
      changed = changed + 1
    end
  end
  log(string.format("round %d: %d nodes changed", n, changed))
  minetest.after(0.5, edit_round, n + 1)
end

minetest.after(0, function()
  math.randomseed(42)
  log("emerging " .. minetest.pos_to_string(pos1) .. " to " .. minetest.pos_to_string(pos2))
  minetest.emerge_area(pos1, pos2, function(_, action, remaining)
    if remaining == 0 then
      log("emerge done")
      edit_round(1)
    end
  end)
end)
