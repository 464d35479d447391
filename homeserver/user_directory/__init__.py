"""The user directory (POST /user_directory/search): finding users by display
name or user ID among those the searcher may see."""
