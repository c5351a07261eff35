/* libpipetrain.so is made of the module archives linked whole (see the root CMakeLists.txt);
 * this translation unit only gives the shared-library target a source of its own. */
typedef int pt_libpipetrain_unit;
